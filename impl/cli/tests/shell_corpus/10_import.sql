.import --csv people.csv people
.schema people
SELECT * FROM people;
.import --csv --skip 1 people.csv people
SELECT count(*) FROM people;
CREATE TABLE pipes(a, b, c);
.import pipes.txt pipes
SELECT * FROM pipes;
.mode csv
.import ragged.csv ragged
.mode list
SELECT * FROM ragged;
.import missing-file.csv nowhere
