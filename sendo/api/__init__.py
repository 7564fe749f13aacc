"""sendo.api"""
