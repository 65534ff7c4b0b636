"""ImageStream imports: what to import when, and the status that results.

``model`` reads spec tags, ``plan`` decides which tags need work, ``history``
turns outcomes into status, ``schedule`` places scheduled imports in time.
All four are pure; ``runner`` is the glue that talks to the registry client
and the API server.
"""
