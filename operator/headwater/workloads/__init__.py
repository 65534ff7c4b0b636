"""Workload image triggers: Deployments, StatefulSets, DaemonSets, CronJobs and Jobs follow tags."""
