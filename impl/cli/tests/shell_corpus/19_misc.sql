CREATE TABLE "my table"(id INTEGER PRIMARY KEY, "select" TEXT, v);
INSERT INTO "my table" VALUES (1, 'a', 1.25), (2, NULL, x'cafe');
.mode insert "my table"
SELECT * FROM "my table";
.headers on
.mode insert new_t
SELECT id, "select" FROM "my table";
.mode quote
SELECT * FROM "my table";
.mode csv
.separator ;
SELECT 'a;b', 'c,d', 3;
.headers off
.mode list
SELECT 1; SELECT * FROM nowhere; SELECT 'skipped, same line';
BEGIN;
INSERT INTO "my table"("select") VALUES ('in txn');
SELECT count(*) FROM "my table";
ROLLBACK;
SELECT count(*) FROM "my table";
.print
.print one
SELECT 'x' -- trailing comment
;
SELECT typeof(1), typeof(1.0), typeof('1'), typeof(x'01'), typeof(NULL);
SELECT 9223372036854775807, -9223372036854775808, 1e308 * 10, -(1e308 * 10);
SELECT char(0x1F600), unicode('é'), length(char(0x1F600)), hex('é');
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200)
SELECT group_concat(i, ',') FROM c;
.mode box
SELECT NULL AS a, '' AS b, ' ' AS c;
.nullvalue NULL
SELECT NULL AS a, '' AS b, ' ' AS c;
