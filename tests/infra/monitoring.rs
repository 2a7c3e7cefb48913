//! What an operator watches: the dashboard shows the queues, the functions, the database, the
//! cache, the API and the workers' own metrics; the alarms that matter notify the alarm topic.

use hcl::eval::Evaluate;

use crate::{Stack, attr, text};

#[test]
fn the_dashboard_shows_queues_functions_database_cache_api_and_the_workers_metrics() {
    let stack = Stack::load();
    let dashboard = stack.block("resource", &["aws_cloudwatch_dashboard", "qbill"]);
    assert_eq!(
        text(attr(dashboard, "dashboard_body")),
        "jsonencode({ widgets = local.dashboard_widgets })"
    );
    // Compared without whitespace: the formatter lays lists out as it likes.
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let widgets = squeeze(&text(stack.local("dashboard_widgets")));
    for needle in [
        // the request queue: depth, in flight, oldest message; the dead-letter queues
        "\"ApproximateNumberOfMessagesVisible\", \"QueueName\", local.request_queue_name",
        "\"ApproximateNumberOfMessagesNotVisible\", \"QueueName\", local.request_queue_name",
        "\"ApproximateAgeOfOldestMessage\", \"QueueName\", local.request_queue_name",
        "\"ApproximateNumberOfMessagesVisible\", \"QueueName\", local.dlq_name",
        "\"ApproximateNumberOfMessagesVisible\", \"QueueName\", local.sweep_dlq_name",
        // the worker and the sweeper
        "\"ConcurrentExecutions\", \"FunctionName\", local.worker_function_name",
        "\"Errors\", \"FunctionName\", local.worker_function_name",
        "\"Throttles\", \"FunctionName\", local.worker_function_name",
        "\"Duration\", \"FunctionName\", local.worker_function_name",
        "\"Errors\", \"FunctionName\", local.sweeper_function_name",
        "\"Throttles\", \"FunctionName\", local.sweeper_function_name",
        "\"Duration\", \"FunctionName\", local.sweeper_function_name",
        // RDS, ElastiCache, API Gateway
        "\"CPUUtilization\", \"DBInstanceIdentifier\", var.name",
        "\"DatabaseConnections\", \"DBInstanceIdentifier\", var.name",
        "\"CommitLatency\", \"DBInstanceIdentifier\", var.name",
        "CacheHits",
        "CacheMisses",
        "\"4XXError\", \"ApiName\", var.name, \"Stage\", var.stage_name",
        "\"5XXError\", \"ApiName\", var.name, \"Stage\", var.stage_name",
        "\"Latency\", \"ApiName\", var.name, \"Stage\", var.stage_name",
        // the workers' EMF metrics
        "local.emf_search.qbill_replies_total",
        "local.emf_search.qbill_handler_seconds",
    ] {
        assert!(
            widgets.contains(&squeeze(needle)),
            "the dashboard lacks {needle}"
        );
    }
    // Found by SEARCH in the namespace var.name, whatever dimensions they carry.
    let searches = stack
        .local("emf_search")
        .evaluate(&stack.context())
        .expect("local.emf_search evaluates");
    let searches = searches.as_object().expect("an object");
    assert_eq!(
        searches["qbill_replies_total"],
        hcl::Value::from(
            "SEARCH('Namespace=\"qbill\" MetricName=\"qbill_replies_total\"', 'Sum', 300)"
        )
    );
    assert_eq!(
        searches["qbill_handler_seconds"],
        hcl::Value::from(
            "SEARCH('Namespace=\"qbill\" MetricName=\"qbill_handler_seconds\"', 'p99', 300)"
        )
    );
    // The namespace the workers publish in is the one searched.
    let worker = stack.block("resource", &["aws_lambda_function", "worker"]);
    assert_eq!(
        crate::lambda_environment(&stack, worker)["QBILL_METRICS_NAMESPACE"],
        "var.name"
    );
    // The names the dashboard uses are the resources' names.
    let rds = stack.block("resource", &["aws_db_instance", "qbill"]);
    assert_eq!(text(attr(rds, "identifier")), "var.name");
    let api = stack.block("resource", &["aws_api_gateway_rest_api", "qbill"]);
    assert_eq!(text(attr(api, "name")), "var.name");

    for output in ["dashboard_name", "dashboard_url"] {
        let output = stack.block("output", &[output]);
        assert!(
            text(attr(output, "value")).contains("aws_cloudwatch_dashboard.qbill.dashboard_name")
        );
    }
}

#[test]
fn alarms_cover_dead_letters_backlog_errors_throttles_the_sweep_and_5xx() {
    let stack = Stack::load();
    let alarms: Vec<_> = stack
        .blocks("resource")
        .filter(|b| b.labels()[0].as_str() == "aws_cloudwatch_metric_alarm")
        .collect();
    let names: std::collections::BTreeSet<_> =
        alarms.iter().map(|b| b.labels()[1].as_str()).collect();
    for expected in [
        "dlq_not_empty",
        "request_backlog_age",
        "worker_errors",
        "throttles",
        "sweeper_errors",
        "sweep_dlq_not_empty",
        "api_5xx",
    ] {
        assert!(names.contains(expected), "no alarm {expected}: {names:?}");
    }
    for alarm in &alarms {
        assert_eq!(
            text(attr(alarm, "alarm_actions")),
            "local.alarm_actions",
            "{:?} notifies the alarm topic",
            alarm.labels()
        );
        assert_eq!(text(attr(alarm, "ok_actions")), "local.alarm_actions");
    }
    assert!(text(stack.local("alarm_actions")).contains("aws_sns_topic.alarms[*].arn"));

    // The worker's alarm is a rate: failed invocations over invocations.
    let worker = stack.block(
        "resource",
        &["aws_cloudwatch_metric_alarm", "worker_errors"],
    );
    let body = hcl::format::to_string(worker.body()).unwrap();
    assert!(body.contains("100 * errors / invocations"), "{body}");
    assert!(
        body.contains("metric_name = \"Errors\"") && body.contains("metric_name = \"Invocations\"")
    );
    assert_eq!(
        text(attr(worker, "threshold")),
        "var.worker_error_rate_alarm_percent"
    );
    let throttles = stack.block("resource", &["aws_cloudwatch_metric_alarm", "throttles"]);
    let functions = text(attr(throttles, "for_each"));
    assert!(functions.contains("aws_lambda_function.worker.function_name"));
    assert!(functions.contains("aws_lambda_function.sweeper.function_name"));
    let api = stack.block("resource", &["aws_cloudwatch_metric_alarm", "api_5xx"]);
    assert_eq!(text(attr(api, "metric_name")), "\"5XXError\"");
}
