.mode column
SELECT 'x' AS a, printf('%.70c', 'y') AS long, 'p' || char(10) || 'q' AS multi
UNION ALL SELECT 'z', 'short', 'r';
.mode box
SELECT 'x' AS a, printf('%.70c', 'y') AS long, 'p' || char(10) || 'q' AS multi
UNION ALL SELECT 'z', 'short', 'r';
.mode table
SELECT 'p' || char(13) || char(10) || 'q' || char(11) || 'w' AS c UNION ALL SELECT 'z';
SELECT 'tab' || char(9) || 'x' AS t, 'ctl' || char(1) || 'y' AS c;
.width 6 -4
.mode column
SELECT 1 AS a, 2 AS b, 3 AS c;
.headers off
SELECT 'abc' AS a, 'de' AS b;
.width
.mode markdown
SELECT 1 AS only_column;
SELECT 1 WHERE 0;
