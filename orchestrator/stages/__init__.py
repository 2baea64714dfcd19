"""The sweep's work units, one module per stage; each unit's ``run`` calls tasks/ and experts/."""
