"""placeholder"""
RUNNERS = {}
