"""Treatment planning on OpenTPS: proton IMPT (robust if asked) and photon IMRT.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["impt", "photon"]
