"""RQ job functions and the OpenTPS/MCsquare pipeline run by the workers."""
