/* The process's cgroup folders, for limits the host backends respect (memory in
 * host_mem.c, CPU quota in cpu/cpu_threads.c). File paths are arguments so that the
 * tests can point them at a made-up tree. */
#ifndef CNN_BACKEND_CGROUP_H
#define CNN_BACKEND_CGROUP_H

/* Call visit(dir, ctx) for the process's cgroup folder under the hierarchy mounted
 * at `root` and for every folder above it up to `root` itself. The cgroup is read
 * from proc_cgroup (/proc/self/cgroup): the v2 line ("0::/path") when controller is
 * NULL, else the v1 line whose controllers include `controller` ("N:cpu,cpuacct:/p").
 * A cgroup that is not found, or whose folder is missing under root (another cgroup
 * namespace), is taken as the root. Returns 0 (visiting nothing) when root is not a
 * folder. */
int cnn_cgroup_walk(const char *proc_cgroup, const char *root, const char *controller,
                    void (*visit)(const char *dir, void *ctx), void *ctx);

#endif
