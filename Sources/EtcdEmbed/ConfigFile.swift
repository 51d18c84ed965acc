import Foundation
import Yams

/// etcd's YAML configuration file (`--config-file`, `etcd.conf.yml`), read as etcd 3.6 reads it
/// and turned into the flags it stands for, so a file and a command line are checked by the
/// same rules (``EtcdFlagTable``, ``ServerFlags``): a setting swift-etcd cannot honour is
/// refused by its key, never ignored.
///
/// Values have etcd's types: strings (URL lists in one comma-separated string), booleans,
/// integers (`heartbeat-interval` and `election-timeout` in milliseconds), durations as integer
/// nanoseconds (Go's `time.Duration` in JSON), YAML lists for `log-outputs` and `cipher-suites`,
/// and the `client-transport-security`, `peer-transport-security`, `discovery-config` and
/// `socket-options` blocks. A value of the wrong type is refused with etcd's message.
///
/// One difference, deliberate: etcd ignores keys it does not know (a misspelt
/// `heartbeat-intreval` silently keeps the default); swift-etcd refuses them by name. The keys
/// etcd's own sample file holds but etcd 3.6 no longer reads (`proxy*`, `discovery-fallback`,
/// and etcd 3.4's removed keys) are ignored with a warning instead, so that file still loads.
public struct ConfigFile: Sendable, Equatable {
    /// A key of the file and the flag it stands for.
    struct Setting: Sendable, Equatable {
        var key: String
        var argument: String
    }

    var settings: [Setting]
    /// Keys etcd 3.6 ignores, reported rather than refused.
    public var warnings: [String]

    /// The flags the file stands for, as `--name=value`.
    public var arguments: [String] { settings.map(\.argument) }

    /// The flags, each checked by ``EtcdFlagTable`` first so that a value swift-etcd cannot
    /// honour is refused naming its key.
    public func checkedArguments() throws(ConfigFileError) -> [String] {
        for setting in settings {
            if let refusal = EtcdFlagTable.check([setting.argument]).refusal {
                throw ConfigFileError("configuration file key \"\(setting.key)\": \(refusal)")
            }
        }
        return arguments
    }

    /// The configuration file to read, if any: `--config-file` on the command line, else
    /// `ETCD_CONFIG_FILE`, as etcd looks for it.
    public static func path(commandLine: [String], environment: [String: String]) -> String? {
        if let given = EtcdFlagTable.given(commandLine).last(where: { $0.name == "config-file" }) { return given.value }
        return environment["ETCD_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// What a configuration file makes swift-etcd ignore, as etcd does: every other flag on
    /// the command line and every other `ETCD_*` variable (etcd ignores them silently; the
    /// entry point names them in a warning).
    public static func ignored(commandLine: [String], environment: [String: String]) -> [String] {
        let flags = EtcdFlagTable.given(commandLine).map(\.name).filter { $0 != "config-file" }.map { "--\($0)" }
        let variables = environment.keys.filter { $0.hasPrefix("ETCD_") && $0 != "ETCD_CONFIG_FILE" }.sorted()
        return flags + variables
    }

    /// Reads the file at `path`.
    public static func load(path: String) throws(ConfigFileError) -> ConfigFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigFileError("open \(path): no such file or directory, or not readable UTF-8")
        }
        return try parse(text)
    }

    /// Reads a configuration from YAML text.
    public static func parse(_ text: String) throws(ConfigFileError) -> ConfigFile {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigFileError("error converting YAML to JSON: yaml: \(error)")
        }
        var file = ConfigFile(settings: [], warnings: [])
        guard let root, !isNull(root) else { return file }
        guard let mapping = root.mapping else {
            throw ConfigFileError.typeMismatch(root, key: "", field: "configYAML", type: "embed.configYAML")
        }
        try file.read(mapping, keys: topLevelKeys, path: [], structName: "configYAML")
        return file
    }

    /// What a key holds, and the flag it sets.
    indirect enum Key: Sendable {
        case value(ValueKind, flag: String)
        /// A block of keys (`client-transport-security`…), named in errors by its Go struct.
        case block([String: Key], structName: String)
        /// A key etcd 3.6 reads and swift-etcd has no flag for: refused when set (`why`).
        case unsupported(ValueKind, why: String)
        /// A key etcd 3.6 does not read (it ignores it): reported, then ignored.
        case ignoredByEtcd(String)
    }

    /// etcd's Go type for a key, which says what YAML value it takes.
    enum ValueKind: Sendable {
        case string, bool, unsigned(goType: String), signed(goType: String)
        /// Go's `time.Duration`: integer nanoseconds.
        case duration
        /// `[]string`: a YAML list, given to the flag comma-separated.
        case strings

        var goType: String {
            switch self {
            case .string: "string"
            case .bool: "bool"
            case .unsigned(let type), .signed(let type): type
            case .duration: "time.Duration"
            case .strings: "[]string"
            }
        }
    }

    private mutating func read(_ mapping: Node.Mapping, keys: [String: Key], path: [String], structName: String) throws(ConfigFileError) {
        for (keyNode, value) in mapping {
            // etcd matches keys as Go's JSON decoder does: ignoring case.
            guard let name = keyNode.string?.lowercased() else {
                throw ConfigFileError("unsupported key in the configuration file: \(keyNode)")
            }
            let dotted = (path + [name]).joined(separator: ".")
            guard let key = keys[name] else {
                throw ConfigFileError(
                    "unknown key \"\(dotted)\" in the configuration file (etcd 3.6 would ignore it; swift-etcd refuses it so a misspelt setting never passes unnoticed)")
            }
            let field = "\(structName).\(dotted)"
            switch key {
            case .ignoredByEtcd(let why):
                warnings.append("configuration file key \"\(dotted)\" is ignored: \(why)")
            case .block(let inner, let innerStruct):
                if Self.isNull(value) { continue }
                guard let block = value.mapping else {
                    throw ConfigFileError.typeMismatch(value, key: dotted, field: field, type: innerStruct)
                }
                try read(block, keys: inner, path: path + [name], structName: innerStruct == "securityConfig" ? innerStruct : structName)
            case .value(let kind, let flag):
                guard let text = try Self.flagValue(value, kind: kind, field: field) else { continue }
                settings.append(Setting(key: dotted, argument: "--\(flag)=\(text)"))
            case .unsupported(let kind, let why):
                guard let text = try Self.flagValue(value, kind: kind, field: field), !Self.isUnset(text, kind: kind) else { continue }
                throw ConfigFileError("configuration file key \"\(dotted)\" is not supported by swift-etcd: \(why)")
            }
        }
    }

    /// The flag value a YAML value stands for; nil for an empty value (the default stays).
    static func flagValue(_ node: Node, kind: ValueKind, field: String) throws(ConfigFileError) -> String? {
        if isNull(node) { return nil }
        let mismatch = { ConfigFileError.typeMismatch(node, key: field, field: field, type: kind.goType) }
        if case .strings = kind {
            guard let sequence = node.sequence else { throw mismatch() }
            var items: [String] = []
            for item in sequence {
                guard let scalar = item.scalar, tagName(item) == .str else { throw ConfigFileError.typeMismatch(item, key: field, field: field, type: "string") }
                items.append(scalar.string)
            }
            return items.joined(separator: ",")
        }
        guard let scalar = node.scalar else { throw mismatch() }
        let tag = tagName(node)
        switch kind {
        case .string:
            guard tag == .str else { throw mismatch() }
            return scalar.string
        case .bool:
            guard tag == .bool, let value = node.bool else { throw mismatch() }
            return value ? "true" : "false"
        case .unsigned:
            guard tag == .int || tag == .float, let value = integer(node), value >= 0 else { throw mismatch() }
            return String(value)
        case .signed:
            guard tag == .int || tag == .float, let value = integer(node) else { throw mismatch() }
            return String(value)
        case .duration:
            guard tag == .int || tag == .float, let nanoseconds = integer(node) else { throw mismatch() }
            return goDuration(nanoseconds)
        case .strings:
            return nil  // handled above
        }
    }

    /// Whether a value is the one that means "not set" (an unsupported key at it is harmless).
    private static func isUnset(_ text: String, kind: ValueKind) -> Bool {
        switch kind {
        case .bool: text == "false"
        case .unsigned, .signed, .duration: text == "0" || text == "0s"
        case .string, .strings: text.isEmpty
        }
    }

    /// An integer-valued YAML number (`5000000000`, or `5e9` as Go's YAML reader also takes).
    private static func integer(_ node: Node) -> Int64? {
        if let value = Int64(node.string ?? "") { return value }
        guard let value = node.float, value.rounded() == value, abs(value) < 9.2e18 else { return nil }
        return Int64(value)
    }

    /// Nanoseconds written as a Go duration flag value (`5s`, `100ms`, `250us`, `7ns`).
    static func goDuration(_ nanoseconds: Int64) -> String {
        if nanoseconds == 0 { return "0s" }
        for (unit, size) in [("s", Int64(1_000_000_000)), ("ms", 1_000_000), ("us", 1_000)] where nanoseconds % size == 0 {
            return "\(nanoseconds / size)\(unit)"
        }
        return "\(nanoseconds)ns"
    }

    private static func isNull(_ node: Node) -> Bool {
        tagName(node) == .null
    }

    private static func tagName(_ node: Node) -> Tag.Name {
        Tag.Name(rawValue: node.tag.rawValue)
    }
}

/// Why a configuration file was refused, worded as etcd words it where etcd refuses it too.
public struct ConfigFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }

    /// etcd's message for a value of the wrong type (Go's JSON decoder's, behind its YAML reader).
    static func typeMismatch(_ node: Node, key: String, field: String, type: String) -> ConfigFileError {
        let found: String
        switch node {
        case .mapping: found = "object"
        case .sequence: found = "array"
        default:
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .bool: found = "bool"
            case .int, .float: found = "number \(node.string ?? "")"
            default: found = "string"
            }
        }
        var description = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal \(found) into Go struct field \(field) of type \(type)"
        if let line = node.mark?.line { description += " (line \(line))" }
        return ConfigFileError(description)
    }
}
