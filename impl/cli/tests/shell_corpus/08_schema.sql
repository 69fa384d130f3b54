CREATE TABLE t(a INTEGER PRIMARY KEY AUTOINCREMENT, b TEXT);
CREATE TABLE "odd name"(x, "y z");
CREATE TABLE w(k TEXT PRIMARY KEY, v UNIQUE) WITHOUT ROWID;
CREATE TABLE longer_table_name_here(x);
CREATE INDEX ti ON t(b);
CREATE UNIQUE INDEX tu ON t(a, b);
CREATE VIEW v AS SELECT a, b AS "b b" FROM t;
CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;
CREATE TABLE c(x -- trailing comment
);
INSERT INTO t(b) VALUES ('x');
.tables
.tables t%
.tables nothing
.schema
.schema t
.schema odd%
.schema w*
.indexes
.indexes t
.indices w
