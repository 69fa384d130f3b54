SELECT 'before exit';
.exit 3
SELECT 'after exit';
