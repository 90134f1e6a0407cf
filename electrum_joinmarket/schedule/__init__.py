"""Schedules of coinjoins (JoinMarket's "Multiple join" / tumbler): the model, its storage in the
wallet file, the tumbler generator and the step engine that resumes after a restart."""
