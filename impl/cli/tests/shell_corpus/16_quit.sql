SELECT 'before quit';
.quit
SELECT 'after quit';
