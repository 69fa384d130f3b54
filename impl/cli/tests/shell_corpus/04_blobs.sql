CREATE TABLE b(id INTEGER, v BLOB);
INSERT INTO b VALUES (1, x'48656c6c6f'), (2, x''), (3, x'00414243'), (4, x'41004243'),
  (5, x'e697a5e69cac'), (6, zeroblob(3)), (7, NULL), (8, x'0a0d09');
.headers on
SELECT id, v, length(v), typeof(v), hex(v) FROM b;
.mode csv
SELECT id, v FROM b;
.mode quote
SELECT id, v FROM b;
.mode insert
SELECT id, v FROM b;
.mode json
SELECT id, v FROM b;
.mode line
SELECT id, v FROM b WHERE id < 4;
.mode column
SELECT id, v FROM b WHERE id IN (1, 2, 5);
