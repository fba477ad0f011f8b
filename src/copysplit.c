/* copysplit.c - placeholder, being written */
