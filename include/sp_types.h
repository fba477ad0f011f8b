/*
 * sp_types.h - forward typedefs shared by the connection modules, so their
 * headers can refer to each other without include cycles.
 */
#ifndef SP_TYPES_H
#define SP_TYPES_H

typedef struct sp_client sp_client_t;
typedef struct sp_server sp_server_t;
typedef struct sp_pool sp_pool_t;
typedef struct sp_sock sp_sock_t;
typedef struct sp_pstmt sp_pstmt_t;
typedef struct sp_params sp_params_t;

#ifndef container_of
#include <stddef.h>
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
