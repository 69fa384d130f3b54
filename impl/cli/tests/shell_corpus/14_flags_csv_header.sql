-- args: -csv -header -nullvalue NIL
CREATE TABLE t(a, "b c");
INSERT INTO t VALUES (1, 'x y'), (NULL, 'z');
SELECT * FROM t;
.mode list
SELECT * FROM t;
