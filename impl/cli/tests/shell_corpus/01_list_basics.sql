-- List mode, the default: rows joined by '|', NULL empty, no header.
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c);
INSERT INTO t VALUES (1, 'one', NULL), (2, 'two;semi', 2.5),
  (3, 'multi
line', -7);
SELECT * FROM t;
# a hash line is a comment when no statement is pending
SELECT a,
       b
  FROM t
 WHERE a > 1;
SELECT 'x'; SELECT 'y';
   SELECT 'leading spaces';
/* a comment */ SELECT 'after comment';
SELECT 'terminated by go'
go
SELECT 'terminated by slash'
/
.headers on
SELECT a AS "id", b FROM t ORDER BY a DESC;
.nullvalue (null)
SELECT NULL, c FROM t;
.separator ", "
SELECT a, b FROM t;
.separator | "\n--\n"
SELECT a FROM t;
.mode list
SELECT 'no semicolon at the end'
