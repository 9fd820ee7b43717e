"""Team mode: state shared by every replica of a gateway through Redis.

team.py (what the engine owns), link.py (the Redis link), records.py (what travels and how it is taken in),
admin.py (member keys for the CLI). Only link.py and admin.py import redis, and only team mode imports them.
"""
