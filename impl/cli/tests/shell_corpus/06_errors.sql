SELECT 1;
SELECT * FROM missing;
SELECT 2; SELECT nope FROM missing2; SELECT 3;
CREATE TABLE k(a UNIQUE);
INSERT INTO k VALUES (1);
INSERT INTO k VALUES (1);
SELECT 4;
SELEC 5;
.nosuchcommand
.mode nosuchmode
.headers
.read does-not-exist.sql
SELECT 'still going';
SELECT CAST('x' AS INTEGER), abs(-9223372036854775807 - 1);
SELECT 'after runtime error';
SELECT 'unterminated string
