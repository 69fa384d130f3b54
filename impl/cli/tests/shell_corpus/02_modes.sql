CREATE TABLE m(i INTEGER, r REAL, t TEXT, b BLOB, n);
INSERT INTO m VALUES (1, 2.5, 'plain', x'414243', NULL),
  (-20, 0.1, 'with "quotes", commas and ''apostrophes''', x'', 7),
  (300, 1e15, '', x'00ff', 'x');
.headers on
.mode list
SELECT * FROM m;
.mode csv
SELECT * FROM m;
.mode tabs
SELECT * FROM m;
.mode json
SELECT * FROM m;
.mode line
SELECT * FROM m;
.mode column
SELECT * FROM m;
.mode box
SELECT * FROM m;
.mode table
SELECT * FROM m;
.mode markdown
SELECT * FROM m;
.mode quote
SELECT * FROM m;
.mode insert
SELECT * FROM m;
.mode insert target
SELECT * FROM m;
.mode html
SELECT * FROM m;
.headers off
.mode csv
SELECT * FROM m;
.mode quote
SELECT * FROM m;
.mode insert
SELECT * FROM m;
.mode column
SELECT * FROM m;
.mode json
SELECT * FROM m WHERE 0;
SELECT 1 AS a; SELECT 2 AS b;
.mode
.mode li
.mode
