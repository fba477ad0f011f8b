/* auth_scram.c - placeholder, being written */
