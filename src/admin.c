/* admin.c - placeholder, being written */
