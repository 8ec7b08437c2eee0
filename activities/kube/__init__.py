"""Kubernetes: read a region's replica counts, scale its workloads and wait for ready, restart
them. clusters.py holds the clients and error translation the Velero activities share,
deployments.py how one Deployment is read and explained, activities.py the activities."""
