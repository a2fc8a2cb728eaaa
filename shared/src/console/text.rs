//! The console's words in Chinese and English: one table per language, the same keys.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The words of `lang` (`zh` or `en`).
pub fn table(lang: &str) -> Value {
    static ZH: OnceLock<Value> = OnceLock::new();
    static EN: OnceLock<Value> = OnceLock::new();
    if lang == "en" {
        EN.get_or_init(|| words(1)).clone()
    } else {
        ZH.get_or_init(|| words(0)).clone()
    }
}

/// Column `i` of the table: 0 Chinese, 1 English.
fn words(i: usize) -> Value {
    let pick = |zh: &str, en: &str| if i == 0 { zh.to_owned() } else { en.to_owned() };
    let mut t = json!({
        "lang": pick("zh-CN", "en"),
        "other_lang": pick("en", "zh"),
        "other_lang_name": pick("English", "中文"),
        "windows": {
            "hour": pick("过去 1 小时", "Last hour"),
            "day": pick("过去 1 天", "Last day"),
            "week": pick("过去 7 天", "Last week"),
        },
        "done": {
            "replayed": pick("已重放：已交给发送方。", "Replayed: handed to its sender."),
            "replayed_all": pick("已重放的失败投递数：", "Dead deliveries replayed:"),
            "recalled": pick("已撤回。", "Recalled."),
        },
    });
    for (key, zh, en) in WORDS {
        t[*key] = json!(pick(zh, en));
    }
    t
}

const WORDS: &[(&str, &str, &str)] = &[
    ("overview", "概览", "Overview"),
    ("events", "事件", "Events"),
    ("event", "事件", "Event"),
    ("deliveries", "投递", "Deliveries"),
    ("delivery", "投递", "Delivery"),
    ("dead", "失败", "Dead"),
    ("undelivered", "未送达", "Undelivered"),
    ("preview", "模板预览", "Preview"),
    ("attention", "需要先处理", "Needs attention first"),
    ("by_part", "按来源和连接器", "By source and connector"),
    ("part", "来源 / 连接器", "Source / connector"),
    ("usage", "本月接口调用", "API calls this month"),
    ("account", "应用", "App"),
    ("calls", "调用次数", "Calls"),
    ("quota", "额度", "Quota"),
    ("no_calls", "本月尚无调用。", "No calls counted this month."),
    ("dashboard", "CloudWatch 仪表盘", "CloudWatch dashboard"),
    ("status", "状态", "Status"),
    ("any", "全部", "any"),
    ("source", "来源", "Source"),
    ("connector", "连接器", "Connector"),
    ("filter", "筛选", "Filter"),
    ("replay_all", "全部重放", "Replay all of these"),
    ("updated", "更新时间", "Updated"),
    ("recipients", "接收人", "Recipients"),
    ("why", "原因", "Why"),
    ("none", "没有符合条件的记录。", "Nothing matches."),
    ("newer", "较新", "Newer"),
    ("older", "较早", "Older"),
    ("page", "第", "Page"),
    ("attempts", "次尝试", "attempts"),
    ("attempt_count", "尝试次数", "Attempts"),
    ("replay", "重放", "Replay"),
    ("recall", "撤回", "Recall"),
    (
        "recall_sure",
        "确定撤回这条消息？",
        "Take this message back?",
    ),
    ("recall_confirm", "确认撤回", "Yes, recall it"),
    ("cancel", "取消", "Cancel"),
    ("timeline", "时间线", "Timeline"),
    ("request", "发出的请求", "The request that went out"),
    ("result", "结果", "Result"),
    ("outcomes", "每人结果", "Each recipient's outcome"),
    ("receipts", "回执", "Receipts"),
    ("kind", "类型", "Kind"),
    ("received", "收到", "Received"),
    ("key", "键", "Key"),
    ("body", "请求体", "Body"),
    (
        "no_deliveries",
        "这个事件没有产生投递（无法读取的请求体，或没有路由接收它）。",
        "This event made no delivery (an unreadable body, or no route takes it).",
    ),
    (
        "preview_help",
        "选择一个 Webhook 并粘贴请求体：下面列出每个连接器将发出的内容，不会发送任何东西。",
        "Pick a webhook and paste a body: below is what each connector would send. Nothing is sent.",
    ),
    ("webhook", "Webhook", "Webhook"),
    ("any_source", "由请求体判断", "the body decides"),
    ("render", "预览", "Render"),
    ("would_send", "将发出", "Would send"),
    (
        "nothing_sent",
        "没有路由接收这个事件。",
        "No route takes this event.",
    ),
    (
        "login_help",
        "输入 server.operator_token 以使用控制台。",
        "Enter server.operator_token to use the console.",
    ),
    ("token", "令牌", "Token"),
    ("login", "登录", "Sign in"),
    ("refused", "无法完成", "Not done"),
    (
        "made_no_delivery",
        "未产生投递的事件",
        "Events that made no delivery",
    ),
    ("delivered", "已送达", "Delivered"),
    ("in_flight", "处理中", "In flight"),
    (
        "dry_run",
        "演练（已记录，未发送）",
        "Dry-run (recorded, not sent)",
    ),
    ("recalled", "已撤回", "Recalled"),
    (
        "dead_ones",
        "条投递失败，可重放",
        "dead deliveries to replay",
    ),
    (
        "undelivered_ones",
        "条投递无人收到",
        "deliveries nobody got",
    ),
    ("of_quota", "的额度已用", "of the quota used"),
    ("created", "创建（待发送）", "created (pending)"),
    ("replayed", "重放", "replayed"),
    (
        "answered",
        "本进程启动以来拒绝和重复的请求",
        "Refused and repeated requests since this process started",
    ),
    (
        "answered_none",
        "没有（在 AWS 上请看仪表盘）。",
        "None (on AWS, see the dashboard).",
    ),
    ("rejected", "拒绝", "Refused"),
    ("duplicates", "重复", "Repeated"),
    ("test_send", "发送测试", "Send a test"),
    ("sample", "示例请求体", "A sample body"),
    ("attempt", "尝试", "attempt"),
    ("use_sample", "使用", "Use it"),
    ("test_to", "只发给", "Only to"),
    (
        "test_ask",
        "这条消息将只发给下面这一个人，确认发送？",
        "This message goes to this one person only. Send it?",
    ),
    ("test_confirm", "确认发送", "Yes, send it"),
    ("test_done", "测试已发送给", "Test sent to"),
];
