"""sendo.cli"""
