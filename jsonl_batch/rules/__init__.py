"""What a valid batch file is: profiles, problems and their catalogue, schemas, the request core,
the line and file rules, limits, model facts.
"""
