.read quits.sqlinc
SELECT 'a .quit in a read file ends that file only';
SELECT 'before quit';
.quit
SELECT 'after quit';
