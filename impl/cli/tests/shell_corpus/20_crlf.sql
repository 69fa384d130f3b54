.headers on
SELECT 1 AS a;
.mode csv
SELECT 2 AS b,
 3 AS c;
.mode list
SELECT 4;
