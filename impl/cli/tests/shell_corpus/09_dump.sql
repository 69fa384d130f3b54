CREATE TABLE t(a INTEGER PRIMARY KEY AUTOINCREMENT, b TEXT, c REAL, d BLOB);
INSERT INTO t(b, c, d) VALUES ('x', 1.5, x'0102'), (NULL, -0.25, NULL),
  ('it''s', 3.0, x''), ('line
break', 1e17, x'ff'), ('cr' || char(13) || 'lf', 0.1, NULL);
CREATE TABLE "select"("from" TEXT, "two words" INTEGER);
INSERT INTO "select" VALUES ('kw', 1), ('日本', 2);
CREATE TABLE w(k PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO w VALUES ('a', 1), ('b', NULL);
CREATE TABLE g(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2));
INSERT INTO g(a) VALUES (4);
CREATE INDEX tb ON t(b);
CREATE VIEW vv AS SELECT b FROM t;
CREATE TRIGGER trg AFTER DELETE ON t BEGIN
  INSERT INTO w VALUES ('deleted', old.a); -- keep a note
END;
DELETE FROM t WHERE a = 2;
.dump
.dump w
.dump --data-only t
.dump nosuchtable
