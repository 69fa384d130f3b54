-- args: -bail
SELECT 'before';
SELECT * FROM missing;
SELECT 'never printed';
