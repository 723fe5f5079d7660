"""The Deployments pages of the Airflow UI: a list of the deployments a user may see and one page per deployment
(nodes, outputs, events, inputs, template; scale and undeploy), served by the plugin at /dodas/ui.

A door like the orchestrator API, on the same footing: its authentication, access rules and request path
(dodas_tasks/api/, deploy/service.py). Nothing imports it but the plugin.
"""
