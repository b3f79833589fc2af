/* Functions gretel's code must not call: unbounded copies and silent number parsing.
 * Included last by every .c file through util.h; using one of these fails the build. */
#ifndef GT_BANNED_H
#define GT_BANNED_H

#undef strcpy
#define strcpy(...) gt_banned_strcpy_use_snprintf_or_memcpy
#undef strcat
#define strcat(...) gt_banned_strcat_use_snprintf
#undef sprintf
#define sprintf(...) gt_banned_sprintf_use_snprintf
#undef vsprintf
#define vsprintf(...) gt_banned_vsprintf_use_vsnprintf
#undef gets
#define gets(...) gt_banned_gets_use_fgets
#undef atoi
#define atoi(...) gt_banned_atoi_use_strtol_with_checks

#endif
