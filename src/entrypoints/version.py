from importlib.metadata import version

VERSION = version("cronium-runtime")
