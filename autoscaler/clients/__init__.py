"""Clients and their errors, shared by read and act: AWS and Kubernetes error types, the Kubernetes connection.
May import: model/, and the AWS and Kubernetes libraries; never read/, decide/, act/ or run/.
"""
