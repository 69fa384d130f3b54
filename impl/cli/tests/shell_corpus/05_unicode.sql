CREATE TABLE u(name TEXT, note TEXT);
INSERT INTO u VALUES ('Zoë', 'café'), ('日本語', 'wide characters'), ('Ελληνικά', 'ω'),
  ('emoji 😀', 'four-byte'), ('tab	inside', 'x');
SELECT * FROM u;
SELECT length(name), upper(note) FROM u;
.headers on
.mode column
SELECT * FROM u;
.mode box
SELECT * FROM u;
.mode table
SELECT * FROM u;
.mode markdown
SELECT * FROM u;
.mode csv
SELECT * FROM u;
.mode json
SELECT * FROM u;
.mode quote
SELECT * FROM u;
.mode line
SELECT * FROM u;
