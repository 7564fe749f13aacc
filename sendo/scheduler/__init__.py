"""sendo.scheduler"""
