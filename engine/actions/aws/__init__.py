"""The aws family: Route 53, RDS, S3, EKS, Auto Scaling and any AWS API call.

``ACTIONS`` maps each action name to ``module:Class``; the registry reads it
without importing the modules, so boto3 is not imported until a step uses a verb
of this family (sessions live in ``engine.connections.aws``).
"""
ACTIONS: dict[str, str] = {
    "aws.call": "engine.actions.aws.call:Call",
    "aws.wait": "engine.actions.aws.wait:Wait",
    "aws.route53_upsert": "engine.actions.aws.route53:Upsert",
    "aws.rds_promote_replica": "engine.actions.aws.rds:PromoteReplica",
    "aws.eks_scale_nodegroup": "engine.actions.aws.scaling:ScaleNodegroup",
    "aws.asg_set_capacity": "engine.actions.aws.scaling:SetCapacity",
    "aws.s3_list": "engine.actions.aws.s3:ListObjects",
    "aws.s3_copy": "engine.actions.aws.s3:Copy",
}
