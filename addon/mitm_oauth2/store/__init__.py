"""Where tokens outlive the process: the disk cache, Redis, the memory fallback, the guard that
puts timeouts and that fallback around them, and the settings that pick one."""
