garbage

