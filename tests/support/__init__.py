"""Helpers the tests and benchmarks share; test modules import only from here, never from each other.
"""
