"""The command line: `grantflow dev`, users, simulate, admins' look-ups and exports."""
