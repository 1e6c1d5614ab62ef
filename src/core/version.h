/* version.h - the one definition of rmu's version (rmu.pc.in's is filled from it). */
#ifndef RMU_VERSION_H
#define RMU_VERSION_H

#define RMU_VERSION "0.1.0"

#endif
