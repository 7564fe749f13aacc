"""sendo.agent"""
