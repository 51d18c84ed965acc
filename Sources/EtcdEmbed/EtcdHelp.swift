import ArgumentParser
import Foundation

/// `swift-etcd --help` in etcd's layout: its usage lines, then the flags swift-etcd honours
/// under etcd's section titles and in etcd's order, each as `--flag 'default'` over its
/// description; swift-etcd's own flags last. Names, defaults and descriptions are read off the
/// flag declarations (``ServerFlags``), so the help cannot disagree with the parser.
public enum EtcdHelp {
    /// The whole help text.
    public static var text: String {
        let entries = declaredFlags()
        var text = usage
        var listed = Set<String>()
        for (index, section) in sections.enumerated() {
            let start = EtcdFlagTable.etcdFlags.firstIndex(of: section.first) ?? 0
            let end = sections.indices.contains(index + 1)
                ? EtcdFlagTable.etcdFlags.firstIndex(of: sections[index + 1].first) ?? EtcdFlagTable.etcdFlags.endIndex
                : EtcdFlagTable.etcdFlags.firstIndex(of: "config-file") ?? EtcdFlagTable.etcdFlags.endIndex
            let flags = EtcdFlagTable.etcdFlags[start..<end].filter { entries[$0] != nil }
            guard !flags.isEmpty else { continue }
            text += "\n\(section.title):\n"
            for flag in flags {
                text += entries[flag]!.rendered(flag)
                listed.insert(flag)
            }
        }
        let own = entries.keys.filter { !listed.contains($0) && $0 != "config-file" }.sorted()
        if !own.isEmpty {
            text += "\nswift-etcd (not in etcd):\n"
            for flag in own { text += entries[flag]!.rendered(flag) }
        }
        return text + "\nCAUTIOUS with unsafe flag! It may break the guarantees given by the consensus protocol!\n"
    }

    private static let usage = """
        Usage:

          swift-etcd [flags]
            Start an etcd server.

          swift-etcd --version
            Show the version of etcd.

          swift-etcd -h | --help
            Show the help information about etcd.

          swift-etcd --config-file
            Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.

        """

    /// etcd's sections, each with the first of its flags in ``EtcdFlagTable/etcdFlags``.
    private static let sections: [(title: String, first: String)] = [
        ("Member", "name"), ("Clustering", "initial-advertise-peer-urls"), ("Security", "cert-file"), ("Auth", "auth-token"),
        ("Profiling and Monitoring", "enable-pprof"), ("Logging", "logger"),
        ("Experimental distributed tracing", "experimental-enable-distributed-tracing"),
        ("Experimental feature", "experimental-initial-corrupt-check"), ("Unsafe feature", "force-new-cluster"),
    ]

    private struct Entry {
        var defaultValue: String
        var description: String

        func rendered(_ flag: String) -> String { "  --\(flag) '\(defaultValue)'\n    \(description)\n" }
    }

    /// Every visible flag of ``ServerFlags`` with its default and description, read from the
    /// help ArgumentParser prints for them (one line each at this width).
    private static func declaredFlags() -> [String: Entry] {
        let lines = ServerFlags.helpMessage(includeHidden: false, columns: 100_000).split(separator: "\n", omittingEmptySubsequences: false)
        var entries: [String: Entry] = [:]
        var index = 0
        while index < lines.count {
            let line = lines[index]
            index += 1
            guard line.hasPrefix("  --") else { continue }
            // `--name`, then ` <value>` or `/--no-name`, maybe `, --alias <value>`, then the description.
            var names: [String] = []
            var rest = line.dropFirst(2)
            var inverted = false
            while rest.hasPrefix("--") {
                let name = String(rest.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" })
                names.append(name)
                rest = rest.dropFirst(2 + name.count)
                if rest.hasPrefix(" <"), let close = rest.firstIndex(of: ">") { rest = rest[rest.index(after: close)...] }
                if rest.hasPrefix("/--no-\(name)") {
                    inverted = true
                    rest = rest.dropFirst("/--no-\(name)".count)
                }
                if rest.hasPrefix(", ") { rest = rest.dropFirst(2) }
            }
            guard let name = names.first else { continue }
            var description = rest.trimmingCharacters(in: .whitespaces)
            if description.isEmpty, index < lines.count, lines[index].hasPrefix("      ") {
                description = lines[index].trimmingCharacters(in: .whitespaces)
                index += 1
            }
            var defaultValue = ""
            if let marker = description.range(of: " (default: ", options: .backwards), description.hasSuffix(")") {
                defaultValue = String(description[marker.upperBound..<description.index(before: description.endIndex)])
                description = String(description[..<marker.lowerBound])
            }
            if inverted || (ServerFlags.booleanFlagNames.contains(name) && defaultValue.isEmpty) {
                defaultValue = defaultValue.hasPrefix("--no-") ? "false" : "true"
            } else if defaultValue.hasPrefix("--") {
                defaultValue = ""  // "the value of another flag": etcd shows an empty default
            }
            for name in names { entries[name] = Entry(defaultValue: defaultValue, description: description) }
        }
        return entries
    }
}
