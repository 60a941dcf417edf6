"""Where to train and what it costs. ``catalog/`` holds the cloud data and the code that fetches it (the
snapshot and its loader, one fetcher per cloud, the refresh), apart from the decision: ``throughput``
(step time per option), ``spot`` (the cost of interruptions), ``filters``, ``pareto`` and ``explain``,
put together by ``ranking``; ``options`` holds what is asked and answered, ``workloads`` the samples
to train on, and ``render`` what ``ddlprof advise`` prints."""
