/* auth_md5.c - placeholder, being written */
