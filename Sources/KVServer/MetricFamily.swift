/// One metric family as Prometheus exposes it: a name, its help text, a type, an optional unit and samples.
/// The currency of ``ServerMetrics/addCollector(_:)``: a collector returns these, and the `/metrics` endpoint writes
/// them in Prometheus's text format or in OpenMetrics.
public struct MetricFamily: Sendable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    public struct Sample: Sendable {
        /// What follows the family's name: `_total` for a counter, `_bucket`, `_sum` or `_count` for a histogram,
        /// nothing for a gauge.
        public var suffix: String
        public var labels: [(String, String)]
        public var value: Double

        public init(suffix: String = "", labels: [(String, String)] = [], value: Double) {
            self.suffix = suffix
            self.labels = labels
            self.value = value
        }
    }

    /// The family's name; for a counter without the `_total` its samples carry (`kvsh_commands` for
    /// `kvsh_commands_total`), as OpenMetrics names it.
    public var name: String
    public var help: String
    public var kind: Kind
    /// The unit the name ends with (`seconds`, `bytes`), for OpenMetrics's `# UNIT` line; nil for none.
    public var unit: String?
    public var samples: [Sample]

    public init(name: String, help: String, kind: Kind, unit: String? = nil, samples: [Sample]) {
        self.name = name
        self.help = help
        self.kind = kind
        self.unit = unit
        self.samples = samples
    }

    /// A gauge: one sample per label set.
    public static func gauge(_ name: String, help: String, unit: String? = nil, _ samples: [([(String, String)], Double)]) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .gauge, unit: unit, samples: samples.map { Sample(labels: $0.0, value: $0.1) })
    }

    public static func gauge(_ name: String, help: String, unit: String? = nil, value: Double) -> MetricFamily {
        gauge(name, help: help, unit: unit, [([], value)])
    }

    /// A counter named `name` (without `_total`): one sample per label set.
    public static func counter(_ name: String, help: String, unit: String? = nil, _ samples: [([(String, String)], Double)]) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .counter, unit: unit,
                     samples: samples.map { Sample(suffix: "_total", labels: $0.0, value: $0.1) })
    }

    public static func counter(_ name: String, help: String, unit: String? = nil, value: Double) -> MetricFamily {
        counter(name, help: help, unit: unit, [([], value)])
    }

    /// Appends one histogram's samples (cumulative buckets with `le`, `+Inf`, `_sum`, `_count`) to this family.
    /// `buckets` are (upper bound, count of observations at or below it), in increasing order.
    public mutating func appendHistogram(labels: [(String, String)], buckets: [(Double, UInt64)], count: UInt64, sum: Double) {
        for (bound, cumulative) in buckets {
            samples.append(Sample(suffix: "_bucket", labels: labels + [("le", Self.format(bound))], value: Double(cumulative)))
        }
        samples.append(Sample(suffix: "_bucket", labels: labels + [("le", "+Inf")], value: Double(count)))
        samples.append(Sample(suffix: "_sum", labels: labels, value: sum))
        samples.append(Sample(suffix: "_count", labels: labels, value: Double(count)))
    }

    /// A number as both formats take it: integers without a fraction, `+Inf`, `NaN`.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9.007_199_254_740_992e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// Writes metric families in Prometheus's text exposition format (0.0.4) or in OpenMetrics 1.0.
enum MetricsExposition {
    static let textContentType = "text/plain; version=0.0.4; charset=utf-8"
    static let openMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    static func render(_ families: [MetricFamily], openMetrics: Bool) -> String {
        var out = ""
        out.reserveCapacity(families.count * 256)
        for family in families {
            // The text format names a counter with its `_total`; OpenMetrics names the family without it.
            let familyName = family.kind == .counter && !openMetrics ? family.name + "_total" : family.name
            out += "# HELP \(familyName) \(escapeHelp(family.help))\n"
            out += "# TYPE \(familyName) \(family.kind.rawValue)\n"
            if openMetrics, let unit = family.unit { out += "# UNIT \(familyName) \(unit)\n" }
            for sample in family.samples {
                out += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    out += "{" + sample.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
                }
                out += " " + MetricFamily.format(sample.value) + "\n"
            }
        }
        if openMetrics { out += "# EOF\n" }
        return out
    }

    private static func escapeHelp(_ text: String) -> String {
        escape(text, quotes: false)
    }

    private static func escapeLabel(_ text: String) -> String {
        escape(text, quotes: true)
    }

    /// Backslash and newline (and in a label value the double quote) escaped, as both formats require.
    private static func escape(_ text: String, quotes: Bool) -> String {
        guard text.contains(where: { $0 == "\\" || $0 == "\n" || (quotes && $0 == "\"") }) else { return text }
        var out = ""
        for character in text {
            switch character {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\"" where quotes: out += "\\\""
            default: out.append(character)
            }
        }
        return out
    }
}
