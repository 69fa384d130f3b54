-- args: -json
CREATE TABLE t(a, b);
INSERT INTO t VALUES (1, 'x'), (2.5, NULL), (NULL, 'q"uote\back');
SELECT * FROM t;
SELECT a FROM t WHERE 0;
