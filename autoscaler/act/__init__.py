"""ACT: the dispatcher (the one place that knows dry run), the AWS and Kubernetes actuators, Slack, Kubernetes Events.
May import: model/ and clients/; never read/, decide/ or run/.
"""
