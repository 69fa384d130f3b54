.echo on
CREATE TABLE t(x);
INSERT INTO t VALUES (1), (2), (3);
SELECT count(*) FROM t;
.echo off
.changes on
UPDATE t SET x = x + 1 WHERE x > 1;
DELETE FROM t WHERE x = 1;
SELECT x FROM t;
.changes off
.print hello "quoted world" 'single\t' plain\tescape
.bail off
.headers ON
SELECT 1 AS one;
.headers 0
SELECT 1 AS one;
