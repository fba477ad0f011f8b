/* sock.c - placeholder, being written */
