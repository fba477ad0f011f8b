/* userlist.c - placeholder, being written */
