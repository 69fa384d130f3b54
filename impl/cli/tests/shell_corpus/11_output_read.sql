CREATE TABLE t(x);
INSERT INTO t VALUES (1), (2);
.output generated.sql
SELECT 'SELECT ' || x || ' * 10;' FROM t;
.output
SELECT 'back on stdout';
.once once.sql
SELECT 'SELECT ''from once'';';
SELECT 'once is over';
.read generated.sql
.read once.sql
.read include.sqlinc
SELECT 'after include';
